// hitvault tracker, served as /hv.js. See README.md beside this file.
//
// Written compact on purpose: the server only drops whole-line `//` comments and
// leading indentation (so a comment always sits on a line of its own), and what
// remains must stay well under 1 KB gzipped. The comments carry the readability.
//
// Never: cookies, localStorage, sessionStorage or any other storage; a CORS
// preflight; a request when Do Not Track or Global Privacy Control is on.
//
// Short names used throughout:
//   w window, d document, n navigator, l location, h history
//   cfg  the data-* attributes of our <script> tag (cfg.api is data-api;
//        undefined when absent, '' when present without a value)
//   api  where hits are POSTed; site  the site's domain
//   off  true when nothing may be sent; last  pathname+search of the last pageview
(function(w,d,n,l,h){
  var tag=d.currentScript,cfg=tag.dataset;
  var api=cfg.api||new URL(tag.src).origin+'/api/collect';
  var site=cfg.domain||l.hostname;
  // File extensions counted as downloads: data-downloads="pdf,zip" or this list,
  // turned into a case-insensitive regular expression on the link's path.
  var exts=RegExp('\\.('+(cfg.downloads||'pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg,iso,msi').replace(/\W+/g,'|')+')$','i');
  // Calls made before we loaded, by the snippet
  // window.hitvault=window.hitvault||function(){(window.hitvault.q=window.hitvault.q||[]).push(arguments)}
  var queue=w.hitvault&&w.hitvault.q||[];
  // Local files; Do Not Track and Global Privacy Control unless data-dnt="false".
  var off=l.protocol=='file:'||cfg.dnt!='false'&&((n.doNotTrack||w.doNotTrack)==1||n.globalPrivacyControl);
  var last;

  // One hit. Props values become strings; "p" is left out when there are none.
  // A page may also opt a visitor out at any moment: window.__hitvault_ignore=true.
  function send(name,props){
    if(off||w.__hitvault_ignore)return;
    var body={n:name,u:l.href,d:site,r:d.referrer||null,w:w.innerWidth,l:n.language};
    for(var k in props)(body.p=body.p||{})[k]=''+props[k];
    body=JSON.stringify(body);
    // A string body is sent as text/plain, which is CORS-safelisted: no preflight.
    // sendBeacon outlives the page; fetch with keepalive is the fallback when
    // sendBeacon is missing or refuses the payload.
    n.sendBeacon&&n.sendBeacon(api,body)||fetch(api,{method:'POST',body:body,keepalive:true,mode:'no-cors'});
  }

  // A pageview, unless the previous one had the same pathname+search: repeated
  // pushState, hash-only changes, and one navigation reported both by the
  // history patch and by the Navigation API all collapse into one.
  function page(){
    if(last!=(last=l.pathname+l.search))send('pageview');
  }

  // Custom events: hitvault('event', name, props).
  w.hitvault=function(type,name,props){
    if(type=='event')send(name,props);
  };

  // SPA navigation: pushState and back/forward (popstate) count; replaceState
  // does not (routers use it to tidy the current URL, not to change the page).
  var push=h.pushState;
  h.pushState=function(){
    push.apply(h,arguments);
    page();
  };
  w.addEventListener('popstate',page);
  // Routers built on the Navigation API may never call pushState.
  if(w.navigation)navigation.addEventListener('currententrychange',function(e){
    if(e.navigationType!='replace')page();
  });

  // Opt-in clicks, primary or middle button, on links: to another host with
  // data-outbound, to a file with a listed extension with data-downloads.
  function click(e){
    var a=e.target.closest('a');
    if(!a||e.button>1)return;
    if(cfg.outbound!=null&&a.host&&a.host!=l.host)send('Outbound Link: Click',{url:a.href});
    // A download's URL without its query string and fragment (they can carry tokens).
    else if(cfg.downloads!=null&&exts.test(a.pathname))send('File Download',{url:a.origin+a.pathname});
  }
  d.addEventListener('click',click);
  d.addEventListener('auxclick',click);

  // The first pageview waits while the page is only prerendered; then the calls
  // queued before we loaded are replayed, in order. (document.prerendering is
  // how browsers expose prerendering now; visibilityState 'prerender' is gone
  // from the spec and from every current browser.)
  function start(){
    if(d.prerendering){
      d.addEventListener('prerenderingchange',start,{once:true});
    }else{
      page();
      queue.forEach(function(args){w.hitvault.apply(w,args)});
    }
  }
  start();
})(window,document,navigator,location,history);
