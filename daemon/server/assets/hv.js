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
//   c  the data-* attributes of our <script> tag (c.api is data-api;
//      undefined when absent, '' when present without a value)
//   a  where hits are POSTed; s  the site's domain
//   x  the download extensions; q  calls queued before we loaded
//   o  true when nothing may be sent; last  pathname+search of the last pageview
//   u  URL of the last pageview; ms, t0, sd  its engagement (see engage)
(function(w,d,n,l,h){
  var t=d.currentScript,c=t.dataset,
  a=c.api||new URL(t.src).origin+'/api/collect',
  s=c.domain||l.hostname,
  // File extensions counted as downloads: data-downloads="pdf,zip" or this list,
  // turned into a case-insensitive regular expression on the link's path.
  x=RegExp('\\.('+(c.downloads||'pdf,xlsx,docx,txt,rtf,csv,exe,key,pps,ppt,pptx,7z,pkg,rar,gz,zip,avi,mov,mp4,mpeg,wmv,midi,mp3,wav,wma,dmg,iso,msi').replace(/\W+/g,'|')+')$','i'),
  // Calls made before we loaded, by the snippet
  // window.hitvault=window.hitvault||function(){(window.hitvault.q=window.hitvault.q||[]).push(arguments)}
  q=w.hitvault&&w.hitvault.q||[],
  // Local files; Do Not Track and Global Privacy Control unless data-dnt="false".
  o=l.protocol=='file:'||c.dnt!='false'&&((n.doNotTrack||w.doNotTrack)==1||n.globalPrivacyControl),
  last,u,ms=0,t0=0,sd;

  // One hit. Props (p) values become strings; "p" is left out when there are
  // none. An engagement (e: its e and sd) names the URL of its pageview (u).
  // A page may also opt a visitor out at any moment: window.__hitvault_ignore=true.
  function send(m,p,e){
    if(o||w.__hitvault_ignore)return;
    var b={n:m,u:e?u:l.href,d:s,r:d.referrer||null,w:w.innerWidth,l:n.language},k;
    for(k in p)(b.p=b.p||{})[k]=''+p[k];
    for(k in e)b[k]=e[k];
    b=JSON.stringify(b);
    // A string body is sent as text/plain, which is CORS-safelisted: no
    // preflight. sendBeacon outlives the page (every browser this script runs
    // in has it; the fetch fallback of earlier versions made room for
    // engagement in the 1 KB budget).
    n.sendBeacon(a,b);
  }

  // A pageview, unless the previous one had the same pathname+search: repeated
  // pushState and hash-only changes collapse into one. It first reports how
  // the previous page was read.
  function page(){
    if(last!=(last=l.pathname+l.search)){
      engage(1);
      u=l.href;
      sd=0;
      send('pageview');
    }
  }

  // Engagement of the current pageview: ms engaged so far (time the page was
  // visible), t0 when the running stretch began (false: hidden), sd the
  // deepest point seen, in percent of the page's height (the server caps it
  // at 100). Every scroll and visibility change updates them; when the page
  // is hidden (which includes leaving it), or before the next pageview (e is
  // 1), they are sent as an "engagement", and ms starts again from 0.
  function engage(e){
    sd=Math.max(sd,(w.scrollY+w.innerHeight)*100/d.documentElement.scrollHeight|0);
    ms+=t0&&Date.now()-t0;
    t0=!d.hidden&&Date.now();
    ms&&(e==1||d.hidden)&&send('engagement',0,{e:ms,sd:sd},ms=0);
  }
  w.addEventListener('scroll',engage);
  w.addEventListener('visibilitychange',engage);

  // Custom events: hitvault('event', name, props).
  w.hitvault=function(e,m,p){
    if(e=='event')send(m,p);
  };

  // SPA navigation: pushState and back/forward (popstate) count; replaceState
  // does not (routers use it to tidy the current URL, not to change the page).
  var push=h.pushState;
  h.pushState=function(){
    push.apply(h,arguments);
    page();
  };
  w.addEventListener('popstate',page);

  // Opt-in clicks, primary or middle button, on links: to another host with
  // data-outbound, to a file with a listed extension with data-downloads.
  function click(e){
    var k=e.target.closest('a');
    if(!k||e.button>1)return;
    if(c.outbound!=null&&k.host&&k.host!=l.host)send('Outbound Link: Click',{url:k.href});
    // A download's URL without its query string and fragment (they can carry tokens).
    else if(c.downloads!=null&&x.test(k.pathname))send('File Download',{url:k.origin+k.pathname});
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
      q.forEach(function(e){w.hitvault.apply(w,e)});
    }
  }
  start();
})(window,document,navigator,location,history);
